package queen

// The spawn-order handlers: decode (orders_validate.go), apply to the book (orders.go),
// answer.

import (
	"net/http"

	"github.com/beekeeper-hive/beekeeper/wire"
)

func (q *Queen) handleOrderCreate(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r, w, wire.MaxRegistrationBody)
	if err != nil {
		return err
	}
	req, err := decodeOrderRequest(body)
	if err != nil {
		return err
	}
	o, err := q.orders.create(req)
	if err != nil {
		return err
	}
	wire.WriteJSON(w, http.StatusAccepted, o)
	return nil
}

func (q *Queen) handleOrders(w http.ResponseWriter, r *http.Request) error {
	f, wait, err := parseOrderQuery(r)
	if err != nil {
		return err
	}
	orders, version := q.orders.wait(r.Context(), q.base, f, wait)
	if r.Context().Err() != nil {
		return nil // the client left: nobody to answer
	}
	wire.WriteJSON(w, http.StatusOK, wire.SpawnOrderList{Orders: orders, Version: version})
	return nil
}

func (q *Queen) handleOrder(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	o, ok := q.orders.get(id)
	if !ok {
		return errUnknownOrder(id)
	}
	wire.WriteJSON(w, http.StatusOK, o)
	return nil
}

func (q *Queen) handleOrderCancel(w http.ResponseWriter, r *http.Request) error {
	o, err := q.orders.cancel(r.PathValue("id"))
	if err != nil {
		return err
	}
	wire.WriteJSON(w, http.StatusOK, o)
	return nil
}

func (q *Queen) handleOrderClaim(w http.ResponseWriter, r *http.Request) error {
	return answerOrder(w, r, decodeClaim, q.orders.claim)
}

func (q *Queen) handleOrderResult(w http.ResponseWriter, r *http.Request) error {
	return answerOrder(w, r, decodeResult, q.orders.result)
}

// answerOrder reads and decodes a hive's body, applies it to the order named in the
// path and answers the order as it now stands.
func answerOrder[T any](w http.ResponseWriter, r *http.Request, decode func([]byte) (T, error),
	apply func(id string, body T) (wire.SpawnOrder, error)) error {
	body, err := readBody(r, w, wire.MaxRegistrationBody)
	if err != nil {
		return err
	}
	v, err := decode(body)
	if err != nil {
		return err
	}
	o, err := apply(r.PathValue("id"), v)
	if err != nil {
		return err
	}
	wire.WriteJSON(w, http.StatusOK, o)
	return nil
}
