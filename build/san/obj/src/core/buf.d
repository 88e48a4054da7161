build/san/obj/src/core/buf.o: src/core/buf.c src/core/alloc.h \
 src/core/buf.h src/core/common.h
src/core/alloc.h:
src/core/buf.h:
src/core/common.h:
