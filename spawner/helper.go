package spawner

import "os"

// helperArg is the first argument of a stop's helper run: on Windows a stop runs the
// beekeeper binary once more to deliver the console signal (see ctrlBreak).
const helperArg = "__beekeeper-ctrl-break"

// RunHelper runs the stop helper and exits when args (os.Args[1:]) ask for it, and
// returns at once otherwise. main calls it first: on Windows a stop runs the binary as
// `beekeeper __beekeeper-ctrl-break PID` to send the worker CTRL_BREAK.
func RunHelper(args []string) {
	if len(args) == 2 && args[0] == helperArg {
		os.Exit(runHelper(args[1]))
	}
}
