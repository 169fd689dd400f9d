module seqtrace/testprog

go 1.19
