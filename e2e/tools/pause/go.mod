// The pod sandbox program of e2e/cluster.sh up --node (standard library only).
module authplane.local/e2e-tools/pause

go 1.26.0
