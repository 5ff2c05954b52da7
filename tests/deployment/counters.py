"""Emulator counters the deployment scenarios compare: paid calls received against paid tasks created."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lotimage_emulator import Emulator


def paid_calls(emulator: Emulator) -> dict[str, int]:
    """Imagine and button calls the emulator received, and the paid tasks it created for them."""
    stats = emulator.stats()
    return {
        "imagine_received": stats["requests"]["imagine"],
        "imagine_created": stats["submissions"]["imagine"],
        "button_received": stats["requests"]["button"],
        "button_created": stats["submissions"]["button"],
    }
