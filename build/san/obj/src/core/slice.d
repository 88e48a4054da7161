build/san/obj/src/core/slice.o: src/core/slice.c src/core/common.h
src/core/common.h:
