package llamaruntime

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// unversionDLLs renames a Windows build's llama.vX.dll and ggml.vX.dll to llama.dll and
// ggml.dll, the names yzma opens, and rewrites the names in the import tables of the
// libraries that import them. A link or a copy would not do: Windows tells loaded
// libraries apart by name, so llama.dll importing ggml.vX.dll next to a ggml.dll would
// load ggml twice, with two backend registries, and llama.cpp would find no backend.
// A folder without versioned DLLs is left as it is.
func unversionDLLs(dir string) error {
	renamed := map[string]string{} // old name -> new name, lower case
	for _, base := range []string{"llama", "ggml"} {
		matches, _ := filepath.Glob(filepath.Join(dir, base+".*.dll"))
		if len(matches) == 0 {
			continue
		}
		to := base + ".dll"
		if err := os.Rename(matches[0], filepath.Join(dir, to)); err != nil {
			return fmt.Errorf("rename %s: %w", matches[0], err)
		}
		renamed[strings.ToLower(filepath.Base(matches[0]))] = to
	}
	if len(renamed) == 0 {
		return nil
	}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.EqualFold(filepath.Ext(path), ".dll") {
			return err
		}
		if err := renameImports(path, renamed); err != nil {
			return fmt.Errorf("rewrite the imports of %s: %w", path, err)
		}
		return nil
	})
}

// renameImports rewrites, in place, the DLL names in a PE file's import and delay-import
// tables that renamed maps to a new name (never longer than the old one: the rest of
// the old name's bytes become NULs).
func renameImports(path string, renamed map[string]string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	f, err := pe.NewFile(bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer f.Close()
	opt, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok {
		return fmt.Errorf("not a 64-bit library")
	}
	// offset maps a relative virtual address to its offset in the file.
	offset := func(rva uint32) (int, bool) {
		for _, s := range f.Sections {
			if rva >= s.VirtualAddress && rva < s.VirtualAddress+s.Size {
				return int(rva - s.VirtualAddress + s.Offset), true
			}
		}
		return 0, false
	}
	changed := false
	// The import table's entries are 20 bytes with the name's address at 12; the
	// delay-import table's are 32 bytes with it at 4. A zero entry ends each table.
	for _, t := range []struct{ dir, size, nameAt int }{
		{pe.IMAGE_DIRECTORY_ENTRY_IMPORT, 20, 12},
		{pe.IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT, 32, 4},
	} {
		if len(opt.DataDirectory) <= t.dir || opt.DataDirectory[t.dir].VirtualAddress == 0 {
			continue
		}
		at, ok := offset(opt.DataDirectory[t.dir].VirtualAddress)
		if !ok {
			return fmt.Errorf("import table outside the file's sections")
		}
		for ; at+t.size <= len(b); at += t.size {
			nameRVA := binary.LittleEndian.Uint32(b[at+t.nameAt:])
			if nameRVA == 0 {
				break
			}
			n, ok := offset(nameRVA)
			end := bytes.IndexByte(b[min(n, len(b)):], 0)
			if !ok || end < 0 {
				return fmt.Errorf("import name outside the file")
			}
			to, ok := renamed[strings.ToLower(string(b[n:n+end]))]
			if !ok {
				continue
			}
			if len(to) > end {
				return fmt.Errorf("the new name %s is longer than the old one", to)
			}
			copy(b[n:n+end], append([]byte(to), make([]byte, end-len(to))...))
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return os.WriteFile(path, b, 0o755)
}
