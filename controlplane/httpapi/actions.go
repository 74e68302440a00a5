package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"

	"google.golang.org/protobuf/proto"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// maxActionBody bounds the body of an endpoint action: a weight and a
// comment.
const maxActionBody = 4 << 10

// actionBody is the JSON body of POST
// /api/clusters/{cluster}/endpoints/{endpoint}/{action}: the weight for
// action weight, and for every action an optional history comment (the
// default is the sluicectl command that does the same: "drain web/a").
type actionBody struct {
	// Weight is kept as sent, so that a weight that is no integer from 0
	// to snapshot.MaxWeight is refused in the words sluicectl uses.
	Weight  json.RawMessage `json:"weight"`
	Comment string          `json:"comment"`
	DryRun  bool            `json:"dry_run"`
}

// actionJSON answers an endpoint action as sluicectl prints its result: the
// version stored (the current one when nothing changed) and the changes;
// for a dry run, the version and changes it would store, and dry_run.
type actionJSON struct {
	Version uint64   `json:"version"`
	Changed bool     `json:"changed"`
	Changes []string `json:"changes"`
	DryRun  bool     `json:"dry_run,omitempty"`
}

// endpointAction serves drain, enable, disable and weight by calling
// ConfigService.UpdateEndpoint, the method behind sluicectl drain, enable,
// disable and set-weight, in the group ?group= names (default: default).
func (a *API) endpointAction(w http.ResponseWriter, r *http.Request) {
	var body actionBody
	dec := json.NewDecoder(io.LimitReader(r.Body, maxActionBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil && err != io.EOF {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("body: %v", err), nil)
		return
	}
	req := &sluicev1.UpdateEndpointRequest{
		Group:    r.URL.Query().Get("group"), // "": default
		Cluster:  r.PathValue("cluster"),
		Endpoint: r.PathValue("endpoint"),
		Comment:  body.Comment,
		DryRun:   body.DryRun,
		Author:   author(r),
	}
	switch action := r.PathValue("action"); action {
	case "drain":
		req.State = sluicev1.AdminState_ADMIN_STATE_DRAINING
	case "enable":
		req.State = sluicev1.AdminState_ADMIN_STATE_ACTIVE
	case "disable":
		req.State = sluicev1.AdminState_ADMIN_STATE_DISABLED
	case "weight":
		if len(body.Weight) == 0 || string(body.Weight) == "null" {
			writeError(w, http.StatusBadRequest, `weight: the body must give the weight: {"weight": 3}`,
				[]fieldError{{Field: "weight", Description: "is required"}})
			return
		}
		weight, ok := snapshot.ParseWeight(string(body.Weight))
		if !ok {
			must := fmt.Sprintf("must be an integer from 0 to %d", snapshot.MaxWeight)
			writeError(w, http.StatusBadRequest, fmt.Sprintf("weight %s, not %s", must, body.Weight),
				[]fieldError{{Field: "weight", Description: must}})
			return
		}
		req.Weight = proto.Uint32(weight)
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown action %q: drain, enable, disable or weight", action), nil)
		return
	}
	resp, err := call(a, r, sluicev1.ConfigService_UpdateEndpoint_FullMethodName, req, a.config.UpdateEndpoint)
	if err != nil {
		writeStatus(w, err)
		return
	}
	changes := resp.GetChanges()
	if changes == nil {
		changes = []string{}
	}
	writeJSON(w, http.StatusOK, actionJSON{Version: resp.GetVersion(), Changed: resp.GetChanged(), Changes: changes, DryRun: req.GetDryRun()})
}

// author is who the history says made an edit from the API: "dashboard"
// and the client's address, until issue 7's tokens name the user.
func author(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "dashboard@" + host
}
