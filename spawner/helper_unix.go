//go:build unix

package spawner

// runHelper has nothing to do on Unix, where a stop signals the process group itself.
func runHelper(string) int { return 2 }
