module github.com/duplex-go/websocket

go 1.22
