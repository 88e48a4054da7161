build/san/obj/src/core/limits.o: src/core/limits.c src/core/alloc.h \
 src/core/limits.h src/core/common.h
src/core/alloc.h:
src/core/limits.h:
src/core/common.h:
