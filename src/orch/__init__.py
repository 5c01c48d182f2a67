"""orch: validate and deploy TOSCA blueprints of HPC workflows."""

__version__ = "0.1.0"
