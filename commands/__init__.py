"""The top floor: the ``headwater`` command (a subcommand per role or job), deployment rendering and
project administration from the command line. The only package that imports every role."""
