package cli

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

// errNoDisplay is a desktop app started where there is no graphical session.
var errNoDisplay = errors.New("no display")

// headlessHint is what to do instead, for both ways the display can be missing.
const headlessHint = "run it from a desktop session; without one, `beekeeper queen`, " +
	"`beekeeper spawn`, `beekeeper ps` and `beekeeper worker` work headless, and " +
	"`xvfb-run beekeeper` gives the app a virtual screen"

// checkDisplay fails before anything starts (the embedded Queen, the hive) when the
// window could not open: on X11/Wayland systems that is an empty DISPLAY and
// WAYLAND_DISPLAY. GLFW would otherwise panic with a stack trace.
func checkDisplay() error {
	switch runtime.GOOS {
	case "linux", "freebsd", "openbsd", "netbsd", "dragonfly":
	default:
		return nil
	}
	if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
		return fmt.Errorf("%w: DISPLAY is not set, so the desktop app has no screen to open its window on; %s",
			errNoDisplay, headlessHint)
	}
	return nil
}

// openWindowError turns GLFW's panic on a display it cannot reach (DISPLAY set to a
// server that is gone) into an error that names the display.
func openWindowError(r any) error {
	return fmt.Errorf("%w: could not open a window on DISPLAY=%q (%v); %s",
		errNoDisplay, os.Getenv("DISPLAY"), r, headlessHint)
}
