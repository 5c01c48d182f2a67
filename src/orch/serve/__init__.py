"""orch serve: HPC Workflows as a Service (the REST API of eFlows4HPC's hpcwaas-api)."""
