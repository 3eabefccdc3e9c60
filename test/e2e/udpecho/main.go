// Command udpecho answers every datagram on UDP port 7 (or the address
// its argument names) with "echo: " and the datagram: the end-to-end
// tests' UDP server in a container.
package main

import (
	"log"
	"net"
	"os"
)

func main() {
	addr := ":7"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			log.Fatal(err)
		}
		c.WriteTo(append([]byte("echo: "), buf[:n]...), from)
	}
}
