build/san/obj/src/core/config.o: src/core/config.c src/core/alloc.h \
 src/core/config.h src/core/common.h src/http/parse.h
src/core/alloc.h:
src/core/config.h:
src/core/common.h:
src/http/parse.h:
