build/san/obj/src/http/chunked.o: src/http/chunked.c src/http/parse.h \
 src/core/common.h
src/http/parse.h:
src/core/common.h:
