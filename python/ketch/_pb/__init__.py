"""Generated protobuf modules for etcd's v3 wire API (see regen.py). Private to ketch."""
