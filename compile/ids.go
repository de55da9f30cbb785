package compile

import "slices"

// idSpace is how many service IDs, and how many real-server IDs, there are: they are uint16.
const idSpace = 1 << 16

// idRegistry hands out IDs that stay the same across reloads for the same key (a service key, or
// a service key and real-server address), so connections keep pointing at the right entries.
//
// A released ID goes back into use only once every ID has been handed out: something may still
// name it (a persistence template names its real server by ID and is not counted among its
// connections), and the data plane tells such a stale reference apart only by service.
type idRegistry struct {
	ids  map[string]uint16
	free []uint16 // released IDs, oldest first
	next int      // the lowest ID never handed out; size once all have been
	size int      // how many IDs there are; 0 means idSpace (tests make it smaller)
}

// get returns key's ID, handing out one if key has none; false when none is left.
func (r *idRegistry) get(key string) (uint16, bool) {
	if id, ok := r.ids[key]; ok {
		return id, true
	}
	size := r.size
	if size == 0 {
		size = idSpace
	}
	var id uint16
	switch {
	case r.next < size:
		id = uint16(r.next)
		r.next++
	case len(r.free) > 0:
		id, r.free = r.free[0], r.free[1:]
	default:
		return 0, false
	}
	if r.ids == nil {
		r.ids = map[string]uint16{}
	}
	r.ids[key] = id
	return id, true
}

// forget releases the IDs of keys not in live; release (when not nil) may veto that for an ID
// that is still in use, and the key keeps it.
func (r *idRegistry) forget(live map[string]bool, release func(id uint16) bool) {
	n := len(r.free)
	for k, id := range r.ids {
		if live[k] || (release != nil && !release(id)) {
			continue
		}
		delete(r.ids, k)
		r.free = append(r.free, id)
	}
	// In ID order, not the map's: the same reloads hand out the same IDs.
	slices.Sort(r.free[n:])
}

func (r *idRegistry) clone() idRegistry {
	n := *r
	n.ids = make(map[string]uint16, len(r.ids))
	for k, v := range r.ids {
		n.ids[k] = v
	}
	n.free = append([]uint16(nil), r.free...)
	return n
}
