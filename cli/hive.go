package cli

// Placeholders until the hive commands land (owned by the spawner's author).
func runSpawn(args []string) int { return fail(1, "spawn is not built yet") }
func runPS(args []string) int    { return fail(1, "ps is not built yet") }
func runStop(args []string) int  { return fail(1, "stop is not built yet") }
func runLogs(args []string) int  { return fail(1, "logs is not built yet") }
