package worker

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math"
	"net/http"

	"github.com/beekeeper-hive/beekeeper/wire"
	"github.com/beekeeper-hive/beekeeper/worker/engine"
)

// handleEmbeddings serves POST /v1/embeddings from a worker started with --embeddings:
// one normalized vector per input, floats or their little-endian bytes in base64.
func (w *Worker) handleEmbeddings(rw http.ResponseWriter, r *http.Request) error {
	var req wire.EmbeddingRequest
	if err := decodeBody(rw, r, &req); err != nil {
		return err
	}
	e, err := w.ready(req.Model)
	if err != nil {
		return err
	}
	switch {
	case len(req.Input) == 0:
		return wire.NewError(http.StatusBadRequest, wire.CodeInvalidField, "input is empty: send a string or an array of strings")
	case req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64":
		return wire.NewError(http.StatusBadRequest, wire.CodeInvalidField, "encoding_format %q: use float or base64", req.EncodingFormat)
	case req.Dimensions != nil:
		return wire.NewError(http.StatusBadRequest, wire.CodeInvalidField, "dimensions is not supported: the model's vectors have a fixed size")
	}
	w.used.touch()
	defer w.used.touch()
	res, err := e.Embed(r.Context(), req.Input)
	var ctxErr *engine.ContextExceededError
	switch {
	case errors.Is(err, engine.ErrNoEmbeddings):
		return wire.NewError(http.StatusNotImplemented, wire.CodeInvalidField, "%v", err)
	case errors.As(err, &ctxErr):
		return wire.NewError(http.StatusBadRequest, wire.CodeContextExceeded,
			"an input is %d tokens but embeddings take at most %d: shorten it", ctxErr.PromptTokens, ctxErr.ContextSize-1)
	case errors.Is(err, engine.ErrNUL):
		return wire.NewError(http.StatusBadRequest, wire.CodeInvalidField, "%v", err)
	case errors.Is(err, engine.ErrClosed):
		return errShuttingDown()
	case err != nil:
		if r.Context().Err() != nil {
			return nil // the client left
		}
		return err
	}
	out := wire.EmbeddingResponse{Object: "list", Model: w.modelName,
		Usage: wire.EmbeddingUsage{PromptTokens: res.Tokens, TotalTokens: res.Tokens}}
	for i, v := range res.Vectors {
		var vec any = v
		if req.EncodingFormat == "base64" {
			buf := make([]byte, 4*len(v))
			for j, x := range v {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(x))
			}
			vec = base64.StdEncoding.EncodeToString(buf)
		}
		out.Data = append(out.Data, wire.Embedding{Object: "embedding", Index: i, Embedding: vec})
	}
	wire.WriteJSON(rw, http.StatusOK, out)
	return nil
}
