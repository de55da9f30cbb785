package config

// MaxWeight is the largest weight a real server takes, in the file and at run time (`govs ctl
// weight`).
const MaxWeight = maxWeight
