"""The ``lattice:`` section of the config: the voxel grid and the compartment layout."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from carabm.engine.lattice import default_layout
from carabm.io.strict import Strict


class Layout(Strict):
    """Compartment geometry: the default layout or a label mask from a file."""

    kind: Literal["default", "mask"] = Field("default", description="default geometry or a mask file")
    tissue_fraction: float = Field(0.6, gt=0, lt=1, description="share of x taken by the tumour site")
    vessel_radius_um: float = Field(30.0, gt=0, description="radius of the tissue vessel [um]")
    brain_vessel_width_um: float = Field(40.0, gt=0, description="width of the brain vessel slab [um]")
    bbb_thickness_um: float = Field(20.0, gt=0, description="thickness of the BBB layer [um]")
    vessel_spacing_um: float | None = Field(
        None, gt=0,
        description="null: one tissue vessel through the tissue block's centre; a distance: a centred square grid of "
                    "vessels (across y and x) this far apart [um], so that a larger lattice keeps the vessel density",
    )  # fmt: skip
    cells_cross_brain_seam: bool = Field(
        True,
        description="true: cells cross the vessel wall between the brain vessel and the tissue that touches it (only cytokine "
                    "diffusion is cut there); false: closed to cells too, so the tumour exchanges cells with blood only through "
                    "its own vessels and a larger tissue block keeps its vascular surface per volume",
    )  # fmt: skip
    file: str | None = Field(None, description="kind=mask: .npy or HDF5 file with uint8 labels 0..3")
    dataset: str | None = Field(None, description="kind=mask, HDF5: dataset name (default lattice/compartment)")

    @model_validator(mode="after")
    def _mask_needs_file(self) -> Layout:
        if self.kind == "mask" and not self.file:
            raise ValueError("file: required when kind is 'mask'")
        if self.vessel_spacing_um is not None and self.vessel_spacing_um <= 2 * self.vessel_radius_um:
            raise ValueError(f"vessel_spacing_um: {self.vessel_spacing_um:g} um makes vessels of radius {self.vessel_radius_um:g} um "
                             f"touch; give more than {2 * self.vessel_radius_um:g} um (or null: one vessel)")  # fmt: skip
        return self


class LatticeConfig(Strict):
    """The voxel grid."""

    shape: tuple[int, int, int] = Field((16, 32, 48), description="[nz, ny, nx] voxels")
    voxel_um: float = Field(20.0, gt=0, description="voxel edge [um] (one cell per voxel)")
    layout: Layout = Layout()

    @field_validator("shape", mode="before")
    @classmethod
    def _shape_from_list(cls, value: Any) -> Any:
        if isinstance(value, list):
            return tuple(value)
        return value

    @field_validator("shape")
    @classmethod
    def _positive(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(n < 1 for n in value):
            raise ValueError(f"every entry must be >= 1, got {list(value)}")
        return value


def default_labels(lat: LatticeConfig) -> Any:
    """The default layout's compartment labels for the ``lattice:`` section ``lat`` (ValueError: it does not fit)."""
    layout = lat.layout
    return default_layout(lat.shape, lat.voxel_um, layout.tissue_fraction, layout.vessel_radius_um, layout.brain_vessel_width_um,
                          layout.bbb_thickness_um, layout.vessel_spacing_um)  # fmt: skip
