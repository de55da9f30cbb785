package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// Commander is what a Handler implements to take commands besides stats and list: changes to the
// running balancer (`govs ctl`) and listings with arguments (`govs list -conns`). The request
// line is the command's name, then a space and its arguments as one JSON object, if it has any.
type Commander interface {
	// Command runs command name with its JSON arguments (empty for none) before ctx ends and
	// returns what to answer, or an error: one line (a rejected reload: one per problem) telling
	// the operator what to do.
	Command(ctx context.Context, name string, args json.RawMessage) (any, error)
}

// CommandTimeout bounds a command's run in the daemon. (A drain's wait for connections to end is
// the client's: it asks again and again.)
const CommandTimeout = 60 * time.Second

// Commands the daemon takes, with their arguments and answers.
const (
	CmdWeight  = "weight"  // RealArgs with Weight; answers CtlResult
	CmdDrain   = "drain"   // RealArgs; weight 0, answers CtlResult (Connections: those left)
	CmdEnable  = "enable"  // RealArgs; answers CtlResult
	CmdDisable = "disable" // RealArgs; answers CtlResult
	CmdZero    = "zero"    // no arguments; answers CtlResult
	CmdReload  = "reload"  // no arguments; answers CtlResult, or the reload's error
	CmdConns   = "conns"   // ConnsArgs; answers ConnList
)

// RealArgs name one real server of one virtual server, as `govs list` prints them.
type RealArgs struct {
	Service string `json:"service"` // "tcp/198.18.0.100:80"
	Real    string `json:"real"`    // "198.19.0.11:80", "[2001:2::11]:80"
	Weight  *int   `json:"weight,omitempty"`
}

// CtlResult is the answer to a change.
type CtlResult struct {
	Message    string `json:"message"`    // what changed, for the operator
	Generation uint32 `json:"generation"` // of the tables in force afterwards
	// Override is the real server's runtime override after the change; null when it has none.
	Override *Override `json:"override,omitempty"`
	// Connections are the real server's connections (active + inactive) after the change.
	Connections int64 `json:"connections"`
}

// ConnsArgs select the connections to list; empty fields select all.
type ConnsArgs struct {
	Service string `json:"service,omitempty"` // "tcp/198.18.0.100:80"
	Real    string `json:"real,omitempty"`    // "198.19.0.11:80", or the address alone for any port
	Client  string `json:"client,omitempty"`  // "198.18.0.10:41000", or the address alone
	Max     int    `json:"max,omitempty"`     // the most to list (0: DefaultConnsMax)
}

// DefaultConnsMax is how many connections `govs list -conns` lists unless told otherwise, and
// MaxConnsMax the most one request lists (dataplane.MaxConns).
const (
	DefaultConnsMax = 1000
	MaxConnsMax     = 100000
)

// ConnList is the answer to "conns": at most ConnsArgs.Max entries of the Matched that match.
type ConnList struct {
	Matched int    `json:"matched"`
	Conns   []Conn `json:"conns"` // [] when none
}

// Conn is one entry of the connection tables, as ipvsadm -Lnc shows it.
type Conn struct {
	Protocol string `json:"protocol"` // "tcp" or "udp"
	// State is the IPVS state name ("ESTABLISHED", "SYN_RECV", "FIN_WAIT", ..., "UDP"), or
	// "TEMPLATE" for a persistence template (Template).
	State string `json:"state"`
	// ExpireSeconds is how long the entry may stay idle before it expires.
	ExpireSeconds float64 `json:"expire_seconds"`
	Client        string  `json:"client"`  // a template's: the masked client address, port 0
	Virtual       string  `json:"virtual"` // the VIP and port the client connected to
	Real          string  `json:"real"`
	Local         string  `json:"local,omitempty"` // FullNAT: the local address and port the real server sees
	Service       string  `json:"service"`         // "tcp/198.18.0.100:80"; "" if a reload removed it
	Template      bool    `json:"template"`
	Worker        int     `json:"worker"`
}

// errorAnswer is how the server answers a failed request.
type errorAnswer struct {
	Error string `json:"error"`
}

// command answers a request other than stats and list.
func (s *Server) command(c net.Conn, enc *json.Encoder, name string, args []byte) {
	cmd, ok := s.h.(Commander)
	if !ok {
		enc.Encode(errorAnswer{fmt.Sprintf("unknown command %q; known: stats, list", name)})
		return
	}
	c.SetDeadline(time.Now().Add(CommandTimeout + 5*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	v, err := cmd.Command(ctx, name, args)
	if err != nil {
		enc.Encode(errorAnswer{err.Error()})
		return
	}
	enc.Encode(v)
}

// Call sends command name with args (marshalled as JSON; nil for none) to the daemon at path and
// decodes its answer into out (nil: discard it). An answer that is an error is returned as that
// error, its text as the daemon wrote it.
func Call(ctx context.Context, path, name string, args, out any) error {
	line := name
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return fmt.Errorf("failed to encode the arguments of %q: %w", name, err)
		}
		line += " " + string(b)
	}
	b, err := Query(ctx, path, line)
	if err != nil {
		return err
	}
	var e struct {
		Error *string `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return fmt.Errorf("govs answered something that is not JSON: %w", err)
	}
	if e.Error != nil {
		return errors.New(*e.Error)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("govs answered %q with something unexpected: %w", name, err)
	}
	return nil
}
