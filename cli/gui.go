package cli

// Placeholder until the gui command lands (owned by its package's author).
func runGUI(args []string) int { return fail(1, "the gui command is not built yet") }
