"""XDMF sidecar (``FILE.xmf`` beside ``FILE.h5``) so ParaView and VisIt open a run's snapshots.

Owns :func:`write_xdmf`: two temporal collections over the snapshots, ``fields`` (a
3DCoRectMesh of the voxels, cell-centred data: cytokines, BBB integrity, compartment
labels) and ``cells`` (Polyvertex points at voxel centres, attributes type/state/id).
Lengths are µm, the grid origin is the lattice corner, array order is (z, y, x).
The file is rewritten atomically (temp file + ``os.replace``) after each snapshot.

In schema 2 files each grid reads its snapshot's row of the ``[time_h, z, y, x]`` field
arrays, and its rows of the ragged agent columns, through XDMF ``HyperSlab`` items; schema
1 files (one HDF5 group per snapshot) are still written out as before.
"""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import quoteattr

import h5py
import numpy as np

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


def _slab_item(h5_name: str, ds: h5py.Dataset, start: int, count: int) -> str:
    """Rows ``start:start+count`` along the first axis of ``ds`` (an XDMF HyperSlab), shaped ``(count,) + rest`` or ``rest`` for one row of a 4D array."""
    rest = ds.shape[1:]
    rank = ds.ndim
    dims = " ".join(str(d) for d in ((count,) + rest if ds.ndim < 4 else rest))
    selection = " ".join(str(v) for v in [start] + [0] * (rank - 1) + [1] * rank + [count, *rest])
    return (f'<DataItem ItemType="HyperSlab" Dimensions="{dims}" Type="HyperSlab">'
            f'<DataItem Dimensions="3 {rank}" Format="XML">{selection}</DataItem>'
            f"{_data_item(h5_name, ds)}</DataItem>")  # fmt: skip


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


def _geometry(shape: tuple[int, ...], voxel_um: float) -> list[str]:
    nz, ny, nx = shape
    return [
        f'<Topology TopologyType="3DCoRectMesh" Dimensions="{nz + 1} {ny + 1} {nx + 1}"/>',
        '<Geometry GeometryType="ORIGIN_DXDYDZ">',
        '<DataItem Dimensions="3" NumberType="Float" Precision="8" Format="XML">0 0 0</DataItem>',
        f'<DataItem Dimensions="3" NumberType="Float" Precision="8" Format="XML">{voxel_um!r} {voxel_um!r} {voxel_um!r}</DataItem>',
        "</Geometry>",
    ]


def _grids_schema2(f: h5py.File, h5_name: str, voxel_um: float) -> tuple[list[str], list[str]]:
    """Field and cell grids of a schema-2 file: one per snapshot, as hyperslabs of the shared arrays."""
    group = f.get("snapshots")
    if group is None or "time_h" not in group:
        return [], []
    n = min(group["time_h"].shape[0], group["step"].shape[0])
    times, steps = group["time_h"][:n], group["step"][:n]
    arrays = [ds for ds in group.values() if isinstance(ds, h5py.Dataset) and ds.ndim == 4 and ds.shape[0] >= n]
    agents = group.get("agents")
    columns = {}
    if agents is not None and "xyz_um" in agents and agents["count"].shape[0] >= n:
        counts = agents["count"][:n]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
        columns = {name: agents[name] for name in ("xyz_um", *AGENT_ATTRIBUTES) if name in agents}
    fields, cells = [], []
    for i in range(n):
        head = [f'<Time Value="{float(times[i])!r}"/>']
        if arrays:
            parts = [f'<Grid Name="fields_{int(steps[i]):06d}" GridType="Uniform">', *head, *_geometry(arrays[0].shape[1:], voxel_um)]
            for ds in arrays:
                parts.append(_attribute(ds.name.rsplit("/", 1)[-1], "Cell", _slab_item(h5_name, ds, i, 1)))
            if "lattice/compartment" in f:
                parts.append(_attribute("compartment", "Cell", _data_item(h5_name, f["lattice/compartment"])))
            fields.append("\n".join([*parts, "</Grid>"]))
        if columns and counts[i] > 0:
            start, count = int(starts[i]), int(counts[i])
            parts = [f'<Grid Name="cells_{int(steps[i]):06d}" GridType="Uniform">', *head,
                     f'<Topology TopologyType="Polyvertex" NumberOfElements="{count}" NodesPerElement="1"/>',
                     f'<Geometry GeometryType="XYZ">{_slab_item(h5_name, columns["xyz_um"], start, count)}</Geometry>']  # fmt: skip
            for name in AGENT_ATTRIBUTES:
                if name in columns:
                    parts.append(_attribute(name, "Node", _slab_item(h5_name, columns[name], start, count)))
            cells.append("\n".join([*parts, "</Grid>"]))
    return fields, cells


def xdmf_text(f: h5py.File, h5_name: str) -> str:
    """The XDMF document for an open run file; ``h5_name`` is how the sidecar names the .h5 (relative)."""
    voxel_um = float(f["lattice/compartment"].attrs.get("voxel_um", 1.0)) if "lattice/compartment" in f else 1.0
    if int(f.attrs.get("schema_version", 1)) >= 2:
        fields, cells = _grids_schema2(f, h5_name, voxel_um)
    else:
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


def write_xdmf(h5: str | Path | h5py.File, xmf: str | Path | None = None, *, h5_path: str | Path | None = None) -> Path:
    """Write (atomically) the XDMF sidecar of a run file, open or by path; returns its path.

    ``h5_path``: where the open file ``h5`` lives now, when it was renamed after opening.
    """
    if isinstance(h5, h5py.File):
        h5_path = Path(h5_path if h5_path is not None else h5.filename)
        text = xdmf_text(h5, h5_path.name)
    else:
        h5_path = Path(h5)
        with h5py.File(h5_path, "r", locking=False) as f:
            text = xdmf_text(f, h5_path.name)
    xmf = Path(xmf) if xmf is not None else xdmf_path(h5_path)
    if xmf.parent.resolve() != h5_path.parent.resolve():
        text = text.replace(f">{h5_path.name}:/", f">{os.path.relpath(h5_path.resolve(), xmf.parent.resolve())}:/")
    tmp = xmf.with_name(xmf.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, xmf)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return xmf
