// Reference kernels: slow, obviously-correct implementations of every op, in
// minicnn::kernels::ref. They are the specification the fast kernels in
// kernels/*.hpp are tested against. One file per op under kernels/ref/.
#pragma once
