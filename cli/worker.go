package cli

// Placeholder until the worker command lands (owned by its package's author).
func runWorker(args []string) int { return fail(1, "the worker command is not built yet") }
