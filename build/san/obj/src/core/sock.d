build/san/obj/src/core/sock.o: src/core/sock.c src/core/sock.h \
 src/core/common.h
src/core/sock.h:
src/core/common.h:
