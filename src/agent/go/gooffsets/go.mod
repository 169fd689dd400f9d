module seqtrace/gooffsets

go 1.19
