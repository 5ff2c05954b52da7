"""The documented LotImage API contract, written down once for the emulator.

Paths, button labels and the service's ``errMessage`` texts, taken from the API contract (the
vendor's two pages plus what its sibling services do) rather than imported from any client: a test
double must be an independent oracle, so a client that misreads the contract disagrees with the
emulator instead of agreeing with itself. Nothing here depends on the rest of the package.
"""

from __future__ import annotations

# ------------------------------------------------------------------------------------- endpoints
#: Every call is ``POST`` with ``Authorization: Bearer <key>``.
IMAGINE_PATH = "/midjourney/v1/imagine"
PROGRESS_PATH = "/midjourney/v1/task/progress"
BUTTON_PATH = "/midjourney/v1/button"

# --------------------------------------------------------------------------------------- buttons
#: ``U1``..``U4`` upscale one picture of a grid (top-left, top-right, bottom-left, bottom-right).
UPSCALE_BUTTONS: tuple[str, ...] = ("U1", "U2", "U3", "U4")
#: ``V1``..``V4`` make a new grid varying one picture.
VARIATION_BUTTONS: tuple[str, ...] = ("V1", "V2", "V3", "V4")
#: The reroll button, U+1F504 (the vendor's page shows it mis-encoded as ``ðŸ”„``).
REROLL_BUTTON = "\U0001f504"
ZOOM_BUTTONS: tuple[str, ...] = ("Zoom Out 2x", "Zoom Out 1.5x")
VARY_BUTTONS: tuple[str, ...] = ("Vary (Strong)", "Vary (Subtle)")
#: The 13 buttons of a finished 2x2 grid, in the order the service lists them.
GRID_BUTTONS: tuple[str, ...] = (
    *UPSCALE_BUTTONS,
    REROLL_BUTTON,
    *VARIATION_BUTTONS,
    *ZOOM_BUTTONS,
    *VARY_BUTTONS,
)
#: The buttons of a finished upscale (a single picture), in the service's order.
UPSCALED_BUTTONS: tuple[str, ...] = ("Vary (Strong)", "Vary (Subtle)", "Zoom Out 2x", "Zoom Out 1.5x")

# ----------------------------------------------------------------------------------------- limits
#: The contract leaves the longest accepted prompt unsaid (Midjourney refuses very long ones); the
#: emulator refuses a prompt longer than this with ``Invalid parameter``.
MAX_PROMPT_LENGTH = 4000

# --------------------------------------------------------------------------------------- messages
#: 401: bad or missing key (the vendor's own text).
MSG_KEY = "Key verification failed, please check whether the key is correct"
#: 400: bad requests.
MSG_PROMPT_REQUIRED = "prompt is required"
MSG_INVALID = "Invalid parameter"
MSG_BANNED = "Banned prompt detected"
MSG_BUTTON_NOT_FOUND = "Button not found"
MSG_ALREADY_UPSCALED = "Already requested upscale"
MSG_NOT_FINISHED = "Task is not finished"
#: 403: the trial key's daily calls are spent.
MSG_QUOTA = "Daily request limit reached"
#: 404: unknown or expired ``taskId``.
MSG_NOT_FOUND = "Task not found"
#: 429: more calls a second than the key may make.
MSG_RATE = "Too many requests"
#: 5xx: transient failures.
MSG_INTERNAL = "Internal error"
MSG_QUEUE_FULL = "Queue full"
