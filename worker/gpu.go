package worker

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/beekeeper-hive/beekeeper/llamaruntime"
	"github.com/beekeeper-hive/beekeeper/models"
	"github.com/beekeeper-hive/beekeeper/worker/engine"
)

// GPU layer flag values besides a count.
const (
	GPULayersAuto = "auto" // as many layers as the estimate says fit in free device memory
	GPULayersAll  = "all"
)

// parseGPULayers checks a --gpu-layers value: auto, all, or a count ≥ 0.
func parseGPULayers(v string) error {
	switch v = strings.TrimSpace(v); v {
	case "", GPULayersAuto, GPULayersAll:
		return nil
	}
	if n, err := strconv.Atoi(v); err != nil || n < 0 {
		return fmt.Errorf("--gpu-layers %q: use auto, all, 0 (CPU only) or a layer count", v)
	}
	return nil
}

// offload is what the worker decided about the GPU, for the log, /capabilities and
// heartbeats.
type offload struct {
	layers  int                  // for engine.Config.GPULayers
	device  *llamaruntime.Device // the GPU the layers go to; nil = CPU only
	backend string               // the runtime build: cpu, vulkan, cuda, metal or custom
	reason  string               // why, in a few words
}

// planOffload turns --gpu-layers into a layer count once the runtime is loaded: with no
// GPU device in sight every value means the CPU; auto asks the models package's
// estimate (gguf-parser-go's) how many layers fit in the chosen device's free memory.
func (w *Worker) planOffload() (offload, error) {
	dir, err := llamaruntime.Load(w.cfg.LlamaLib)
	if err != nil {
		return offload{}, err
	}
	plan := offload{backend: llamaruntime.BackendOf(dir)}
	spec := strings.TrimSpace(w.cfg.GPULayers)
	if spec == "" {
		spec = GPULayersAuto
	}
	if spec == "0" {
		plan.reason = "--gpu-layers 0"
		return plan, nil
	}
	devices, err := llamaruntime.Devices()
	if err != nil {
		return offload{}, err
	}
	// A discrete GPU before an integrated one (llama.cpp's own order: an integrated GPU
	// shares the host's RAM), then the one with the most free memory.
	var gpu *llamaruntime.Device
	for i := range devices {
		d := &devices[i]
		if !d.GPU() {
			continue
		}
		if gpu == nil || betterGPU(d, gpu) {
			gpu = d
		}
	}
	if gpu == nil {
		plan.reason = "no GPU device in the " + plan.backend + " runtime"
		return plan, nil
	}
	plan.device = gpu
	switch spec {
	case GPULayersAll:
		plan.layers, plan.reason = engine.GPULayersAll, "--gpu-layers all"
	case GPULayersAuto:
		n, est, err := models.FitLayers(w.cfg.ModelPath, models.EstimateOptions{CtxSize: w.cfg.CtxSize, Parallel: w.cfg.Parallel}, gpu.FreeBytes)
		if err != nil {
			// A model the estimator cannot read may still load: run it on the CPU
			// rather than refuse to start.
			w.log.Warn("no memory estimate for --gpu-layers auto: running on the CPU (give --gpu-layers N to offload)", "err", err)
			plan.device, plan.reason = nil, "auto: no estimate ("+err.Error()+")"
			return plan, nil
		}
		plan.layers = n
		if est.FullOffload() {
			plan.layers = engine.GPULayersAll
		}
		plan.reason = fmt.Sprintf("auto: %d of %d layers fit in %s's %s free (≈%s on it)",
			n, est.Layers, gpu.Name, models.FormatBytes(gpu.FreeBytes), models.FormatBytes(est.VRAMBytes))
	default:
		plan.layers, _ = strconv.Atoi(spec)
		plan.reason = "--gpu-layers " + spec
	}
	if plan.layers == 0 {
		plan.device = nil
	}
	return plan, nil
}

// betterGPU reports whether a is the better device for the layers than b.
func betterGPU(a, b *llamaruntime.Device) bool {
	if discrete := a.Type == "gpu"; discrete != (b.Type == "gpu") {
		return discrete
	}
	return a.FreeBytes > b.FreeBytes
}
