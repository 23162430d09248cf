"""The engine layer: lattice, agents, movement, fields, backend and RNG.

It knows compartments and arrays but no cell type or cytokine by name.
"""
