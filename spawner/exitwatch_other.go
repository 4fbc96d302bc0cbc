//go:build !linux && !windows

package spawner

// WatchExit is not available here: poll Alive instead.
func WatchExit(pid int, createTime int64) (w *ExitWatch, ok bool) { return nil, false }
