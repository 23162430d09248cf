"""XDMF sidecar (``FILE.xmf`` beside ``FILE.h5``) so ParaView and VisIt open a run's snapshots.

Owns :func:`write_xdmf`: two temporal collections over the snapshots, ``fields`` (a
3DCoRectMesh of the voxels, cell-centred data: cytokines, BBB integrity, compartment
labels) and ``cells`` (Polyvertex points at voxel centres, attributes type/state/id).
Lengths are µm, the grid origin is the lattice corner, array order is (z, y, x).
The file is rewritten atomically (temp file + ``os.replace``) after each snapshot.
"""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import quoteattr

import h5py

#: HDF5 dtype -> XDMF (NumberType, Precision)
_NUMBER_TYPES = {"f4": ("Float", 4), "f8": ("Float", 8), "i1": ("Char", 1), "u1": ("UChar", 1), "i4": ("Int", 4),
                 "u4": ("UInt", 4), "i8": ("Int", 8), "u8": ("UInt", 8), "i2": ("Short", 2), "u2": ("UShort", 2)}  # fmt: skip
#: agent columns shown as point attributes
AGENT_ATTRIBUTES = ("type", "state", "id")


def xdmf_path(h5_path: str | Path) -> Path:
    """The sidecar of an output: ``FILE.h5`` -> ``FILE.xmf``."""
    return Path(h5_path).with_suffix(".xmf")


def _data_item(h5_name: str, ds: h5py.Dataset) -> str:
    kind = ds.dtype.str.lstrip("<>|=")
    number, precision = _NUMBER_TYPES.get(kind, ("Float", 4))
    dims = " ".join(str(d) for d in ds.shape)
    return (f'<DataItem Dimensions="{dims}" NumberType="{number}" Precision="{precision}" Format="HDF">'
            f"{h5_name}:{ds.name}</DataItem>")  # fmt: skip


def _attribute(name: str, center: str, item: str) -> str:
    return f'<Attribute Name={quoteattr(name)} AttributeType="Scalar" Center="{center}">{item}</Attribute>'


def _field_grid(f: h5py.File, h5_name: str, snap: h5py.Group, voxel_um: float) -> str | None:
    datasets = list(snap.get("fields", {}).values())
    if "bbb_integrity" in snap:
        datasets.append(snap["bbb_integrity"])
    if not datasets:
        return None
    nz, ny, nx = datasets[0].shape
    parts = [
        f'<Grid Name="fields_{snap.name.rsplit("/", 1)[-1]}" GridType="Uniform">',
        f'<Time Value="{float(snap.attrs["time_h"])!r}"/>',
        f'<Topology TopologyType="3DCoRectMesh" Dimensions="{nz + 1} {ny + 1} {nx + 1}"/>',
        '<Geometry GeometryType="ORIGIN_DXDYDZ">',
        '<DataItem Dimensions="3" NumberType="Float" Precision="8" Format="XML">0 0 0</DataItem>',
        f'<DataItem Dimensions="3" NumberType="Float" Precision="8" Format="XML">{voxel_um!r} {voxel_um!r} {voxel_um!r}</DataItem>',
        "</Geometry>",
    ]
    for ds in datasets:
        parts.append(_attribute(ds.name.rsplit("/", 1)[-1], "Cell", _data_item(h5_name, ds)))
    if "lattice/compartment" in f:
        parts.append(_attribute("compartment", "Cell", _data_item(h5_name, f["lattice/compartment"])))
    parts.append("</Grid>")
    return "\n".join(parts)


def _cell_grid(h5_name: str, snap: h5py.Group) -> str | None:
    agents = snap.get("agents")
    if agents is None or "xyz_um" not in agents or agents["xyz_um"].shape[0] == 0:
        return None
    n = agents["xyz_um"].shape[0]
    parts = [
        f'<Grid Name="cells_{snap.name.rsplit("/", 1)[-1]}" GridType="Uniform">',
        f'<Time Value="{float(snap.attrs["time_h"])!r}"/>',
        f'<Topology TopologyType="Polyvertex" NumberOfElements="{n}" NodesPerElement="1"/>',
        f'<Geometry GeometryType="XYZ">{_data_item(h5_name, agents["xyz_um"])}</Geometry>',
    ]
    for column in AGENT_ATTRIBUTES:
        if column in agents:
            parts.append(_attribute(column, "Node", _data_item(h5_name, agents[column])))
    parts.append("</Grid>")
    return "\n".join(parts)


def xdmf_text(f: h5py.File, h5_name: str) -> str:
    """The XDMF document for an open run file; ``h5_name`` is how the sidecar names the .h5 (relative)."""
    voxel_um = float(f["lattice/compartment"].attrs.get("voxel_um", 1.0)) if "lattice/compartment" in f else 1.0
    snaps = [f[f"snapshots/{name}"] for name in sorted(f.get("snapshots", {}))]
    fields = [g for g in (_field_grid(f, h5_name, s, voxel_um) for s in snaps) if g]
    cells = [g for g in (_cell_grid(h5_name, s) for s in snaps) if g]
    out = ['<?xml version="1.0" ?>', '<!DOCTYPE Xdmf SYSTEM "Xdmf.dtd" []>', '<Xdmf Version="2.0">', "<Domain>"]
    for name, grids in (("fields", fields), ("cells", cells)):
        if grids:
            out.append(f'<Grid Name="{name}" GridType="Collection" CollectionType="Temporal">')
            out.extend(grids)
            out.append("</Grid>")
    out += ["</Domain>", "</Xdmf>", ""]
    return "\n".join(out)


def write_xdmf(h5: str | Path | h5py.File, xmf: str | Path | None = None) -> Path:
    """Write (atomically) the XDMF sidecar of a run file, open or by path; returns its path."""
    if isinstance(h5, h5py.File):
        h5_path = Path(h5.filename)
        text = xdmf_text(h5, h5_path.name)
    else:
        h5_path = Path(h5)
        with h5py.File(h5_path, "r", locking=False) as f:
            text = xdmf_text(f, h5_path.name)
    xmf = Path(xmf) if xmf is not None else xdmf_path(h5_path)
    if xmf.parent.resolve() != h5_path.parent.resolve():
        text = text.replace(f">{h5_path.name}:/", f">{os.path.relpath(h5_path.resolve(), xmf.parent.resolve())}:/")
    tmp = xmf.with_name(xmf.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, xmf)
    return xmf
