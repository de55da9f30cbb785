package ha

// State is a node's role. The zero State is invalid; on the wire it is one byte.
type State uint8

const (
	_ State = iota
	// StateInit is a node that has not started yet: it holds nothing and sends nothing.
	StateInit
	// StateBackup holds nothing: it does not answer for the VIPs and does not forward.
	StateBackup
	// StateActive answers for the VIPs and floating addresses and forwards.
	StateActive
	// StateFault is a node whose interfaces or rings failed: it holds nothing and advertises
	// priority 0, so its peers take over at once.
	StateFault
	numStates
)

var stateNames = [numStates]string{"invalid", "init", "backup", "active", "fault"}

// String returns the state's name as `govs stats` shows it: "init", "backup", "active", "fault".
func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "invalid"
}

func (s State) valid() bool { return s > 0 && s < numStates }
