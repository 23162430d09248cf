"""Interactive vispy viewer and headless renderer."""
