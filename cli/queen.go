package cli

// Placeholder until the queen command lands (owned by its package's author).
func runQueen(args []string) int { return fail(1, "the queen command is not built yet") }
