"""The forwarder role: each project's destinations get its events once the pipeline is done with them."""
