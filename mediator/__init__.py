"""The mediator: reads the raw topic and sends each event into its project's flow."""
