"""Input/output: configuration schema, HDF5 and XDMF writers, checkpoints."""
