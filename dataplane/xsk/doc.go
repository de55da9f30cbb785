// Package xsk moves Ethernet frames between one interface queue and user space through an
// AF_XDP socket (XDP socket, XSK): an XDP program on the interface redirects frames into an
// XSKMAP, the kernel writes them into a UMEM shared with user space, and four rings (fill,
// RX, TX, completion) pass frame addresses back and forth. Unlike AF_PACKET, a received frame
// never becomes an skb on the receive side in native (driver) mode, and no frame is copied
// into a ring after the stack has already built an skb for it.
//
// One Socket owns one UMEM, split in two halves: receive frames, which circulate between the
// fill ring and the RX ring, and transmit frames, which circulate between the TX ring and the
// completion ring. Received frames are read in place (RxBatch); transmitted frames are
// written into a free transmit frame (TxFrame, TxCommit) and sent with Flush, the same shape
// as package afpacket's rings.
//
// A Program is the XDP side: an XSKMAP and a program that redirects IPv4 frames arriving on a
// queue to the socket registered for that queue, and passes everything else (ARP, IPv6) to
// the kernel. Attach it in driver mode (native XDP: veth and most NIC drivers support it) or
// generic mode (the program runs on the skb after the stack's receive path, any driver).
// AttachFilter and SetFilter choose the frames with a classic BPF filter compiled to eBPF;
// SetFilterSteer adds a classic program whose result, a reader's number, the program puts in
// front of each frame for RxBatchSteer, so that readers of several queues can pass each frame
// to the reader it belongs to.
//
// Only Linux has AF_XDP; elsewhere Open and Attach fail.
package xsk
