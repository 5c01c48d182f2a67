"""Container images orch builds (``orch.nodes.ContainerImage``): from a Spack environment or
from a base image and build steps, as an Apptainer SIF file or an OCI archive.

One job per module: ``spec`` reads a node's properties, ``spack`` writes spack.yaml,
``recipes`` writes the Apptainer definition or Dockerfile, ``cache`` names images by the hash
of what makes them and keeps them on orch's machine, ``build`` runs the builders, ``place``
puts images on sites.
"""
