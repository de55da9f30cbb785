//go:build !linux

package main

// missingCapabilities is nil where there are no Linux capabilities.
func missingCapabilities(afxdp bool) []string { return nil }
