module github.com/verge-edge/verge/bench/tools

go 1.26.0
