"""Where commands run: the local machine, or a host over SSH (paramiko), pooled per host."""
