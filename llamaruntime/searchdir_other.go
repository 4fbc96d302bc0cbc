//go:build !windows

package llamaruntime

// searchDir has nothing to do: the libraries find each other through their rpath
// ($ORIGIN, @loader_path).
func searchDir(string) error { return nil }
