package worker

import (
	"errors"

	"golang.org/x/sys/windows"
)

// addrInUse reports whether a listen failed because the port is taken (Winsock's own
// code: syscall.EADDRINUSE never matches there).
func addrInUse(err error) bool { return errors.Is(err, windows.WSAEADDRINUSE) }
