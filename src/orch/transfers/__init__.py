"""Data transfers that orch does itself in place of eFlows4HPC's Data Logistics Service (an
Airflow service whose DAGs move data): one small module per source kind, all landing files on a
site through the same careful path (``site``): streamed in chunks, written to ``<name>.part``,
hashed by orch while sent and by the site once written, renamed only when both agree, skipped
when the site already holds the same bytes.

- ``http``: a file at an HTTP(S) URL (DLS ``plainhttp2ssh``)
- ``webdav``: a WebDAV file or collection to a site, and a site's files to WebDAV
- ``git``: a git repository's tree (DLS ``git2ssh``)
- ``ssh``: a file or folder of one site to another (DLS ``ssh2ssh``)
- ``b2share``: the files of a B2SHARE record (DLS ``taskflow_example``)

The executor that reads eFlows4HPC's node types and picks one is ``orch.executors.dls``.
"""
