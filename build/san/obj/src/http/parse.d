build/san/obj/src/http/parse.o: src/http/parse.c src/http/parse.h \
 src/core/common.h
src/http/parse.h:
src/core/common.h:
