package afpacket

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/net/bpf"
)

type bpfIns = bpf.RawInstruction

func TestGeometry(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		mtu     int
		want    geometry
		wantErr string
	}{
		{"defaults-1500", Config{}, 1500, geometry{rxBlockSize: 4096, rxBlocks: 1024, rxTimeoutMS: 1, txFrameSize: 2048, txFrames: 1024, txBlockSize: 4096, txBlocks: 512}, ""},
		{"defaults-vnet", Config{VnetHdr: true}, 1500, geometry{rxBlockSize: 128 << 10, rxBlocks: 32, rxTimeoutMS: 1, txFrameSize: 128 << 10, txFrames: 64, txBlockSize: 128 << 10, txBlocks: 64}, ""},
		{"defaults-jumbo", Config{}, 9000, geometry{rxBlockSize: 16 << 10, rxBlocks: 256, rxTimeoutMS: 1, txFrameSize: 16 << 10, txFrames: 256, txBlockSize: 16 << 10, txBlocks: 256}, ""},
		{"explicit", Config{BlockSize: 8192, NumBlocks: 3, BlockTimeout: 1500 * time.Microsecond, TxFrameSize: 1600, TxFrames: 5}, 1500, geometry{rxBlockSize: 8192, rxBlocks: 3, rxTimeoutMS: 2, txFrameSize: 1600, txFrames: 6, txBlockSize: 4096, txBlocks: 3}, ""},
		{"block-not-pow2", Config{BlockSize: 12288}, 1500, geometry{}, "BlockSize"},
		{"block-too-small", Config{BlockSize: 2048}, 1500, geometry{}, "BlockSize"},
		{"block-too-big", Config{BlockSize: 8 << 20}, 1500, geometry{}, "BlockSize"},
		{"negative-blocks", Config{NumBlocks: -1}, 1500, geometry{}, "NumBlocks"},
		{"negative-timeout", Config{BlockTimeout: -time.Millisecond}, 1500, geometry{}, "BlockTimeout"},
		{"tx-unaligned", Config{TxFrameSize: 2008}, 1500, geometry{}, "TxFrameSize"},
		{"tx-tiny", Config{TxFrameSize: 64}, 1500, geometry{}, "TxFrameSize"},
		{"tx-negative", Config{TxFrames: -3}, 1500, geometry{}, "TxFrames"},
		{"prog-without-group", Config{FanoutProg: make([]bpfIns, 1)}, 1500, geometry{}, "FanoutGroup"},
		{"filter-too-long", Config{Filter: make([]bpfIns, 5000)}, 1500, geometry{}, "Filter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newGeometry(tt.cfg, tt.mtu, 4096)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("geometry (-want +got):\n-%+v\n+%+v", tt.want, got)
			}
		})
	}
}
