package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/beekeeper-hive/beekeeper/llamaruntime"
)

// devicesReport is `beekeeper devices --json`; the worker and the spawn dialog read it.
type devicesReport struct {
	Runtime string                `json:"runtime"`
	Backend string                `json:"backend"` // cpu, vulkan, cuda, metal or custom
	Devices []llamaruntime.Device `json:"devices"`
}

func runDevices(args []string) int {
	fs := flag.NewFlagSet("devices", flag.ContinueOnError)
	backend := fs.String("backend", "", "installed build to load: "+backendNames()+" (default $"+llamaruntime.EnvBackend+", then "+llamaruntime.DefaultBackend()+")")
	lib := fs.String("llama-lib", "", "folder of the llama.cpp libraries (wins over --backend)")
	asJSON := fs.Bool("json", false, "print JSON: runtime folder, backend, devices with bytes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	dir, err := llamaruntime.Locate(*lib)
	if *lib == "" {
		dir, err = llamaruntime.LocateBackend(*backend)
	}
	if err == nil {
		dir, err = llamaruntime.Load(dir)
	}
	var devs []llamaruntime.Device
	if err == nil {
		devs, err = llamaruntime.Devices()
	}
	if err != nil {
		return fail(1, "%v", err)
	}
	rep := devicesReport{Runtime: dir, Backend: llamaruntime.BackendOf(dir), Devices: devs}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fail(1, "%v", err)
		}
	} else {
		printDevices(rep)
	}
	if hint := noGPUHint(rep); hint != "" {
		fmt.Fprintln(os.Stderr, "beekeeper: "+hint)
	}
	return 0
}

func printDevices(rep devicesReport) {
	fmt.Printf("runtime %s (%s)\n", rep.Runtime, rep.Backend)
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tBACKEND\tFREE\tTOTAL\tDESCRIPTION")
	for _, d := range rep.Devices {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, d.Type, d.Backend, humanBytes(d.FreeBytes), humanBytes(d.TotalBytes), d.Description)
	}
	tw.Flush()
}

// noGPUHint says why a GPU build sees no GPU, or "".
func noGPUHint(rep devicesReport) string {
	for _, d := range rep.Devices {
		if d.GPU() {
			return ""
		}
	}
	switch rep.Backend {
	case llamaruntime.BackendVulkan:
		return "the Vulkan build sees no GPU: it needs libvulkan1 and the GPU's Vulkan driver " +
			"(mesa-vulkan-drivers, or the vendor's); a CPU-only Vulkan device (llvmpipe) shows with GGML_VK_VISIBLE_DEVICES=0"
	case llamaruntime.BackendCUDA:
		return "the CUDA build sees no GPU: it needs an NVIDIA GPU, its driver (libcuda.so.1) and the CUDA 13 or 12 runtime " +
			"(libcudart, libcublas) on the library path"
	}
	return ""
}

// humanBytes is "23.4 GiB", "512 MiB", "0 B".
func humanBytes(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTP"[exp])
}
