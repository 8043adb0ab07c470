from static import Layer
class Other:
    def backward(self, dhs):
        raise RuntimeError("never")
class Other2(Layer):
    pass
