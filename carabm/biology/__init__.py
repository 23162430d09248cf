"""Biology layer: cell-type rules, cytokine network, BBB, therapies, clinical readouts (never imports cupy)."""
