"""Style: the WildML "Recurrent Neural Networks Tutorial" (Denny Britz, 2015), part 2 and 3: a
word-level language model as a class ``RNNNumpy`` with U, V, W, trained with plain SGD.

    RNNNumpy.forward_propagation(x)      forward only: (o, s).
    RNNNumpy.predict(x)                  argmax of o.
    RNNNumpy.calculate_total_loss(x, y)  the cross-entropy SUMMED over every word of every sentence
                                         in the lists x, y.
    RNNNumpy.calculate_loss(x, y)        the total divided by the number of words (the mean).
    RNNNumpy.bptt(x, y)                  RIGHT for sequences of up to bptt_truncate + 1 words (exact
                                         BPTT there); on longer ones it is the tutorial's truncated
                                         BPTT: each step's error goes back bptt_truncate steps, so
                                         bptt_truncate + 1 steps are kept (K = 5 at the default 4).
                                         Gradient of calculate_total_loss([x], [y]) (the sum over
                                         one sentence).  With bptt_truncate=1 and 4 words it is
                                         the truncated, wrong gradient.
    RNNNumpy.gradient_check(x, y, ...)   the tutorial's own finite-difference check (prints).
    RNNNumpy.sgd_step(x, y, lr)          one SGD step on one sentence.
    train_with_sgd(model, X, Y, ...)     the loop over epochs, with loss reports and lr halving.

Conventions: cell "rnn" (no biases), U = W_xh (hidden, word), W = W_hh (hidden, hidden),
V = W_hy (word, hidden); x and y are lists of word indices (y is x shifted by one); the input's
one-hot product is a column pick, U[:, x[t]]; states are rows of s, shape (T + 1, hidden), whose
last row s[-1] stays zero: the initial state is always 0.  Returns [dLdU, dLdV, dLdW].

Written from scratch for bptt derive's tests (bptt check on code with no wrapper).
"""

import csv
import itertools
import operator
import re
import sys
from datetime import datetime

import numpy as np

vocabulary_size = 8000
unknown_token = "UNKNOWN_TOKEN"
sentence_start_token = "SENTENCE_START"
sentence_end_token = "SENTENCE_END"


def softmax(x):
    xt = np.exp(x - np.max(x))
    return xt / np.sum(xt)


def load_training_data(filename, vocabulary_size=vocabulary_size):
    """Read comments from a CSV file (text in the first column), split them into sentences and words,
    keep the most frequent words, and return (X_train, y_train, index_to_word, word_to_index)."""
    print("reading %s" % filename)
    with open(filename, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, skipinitialspace=True)
        next(reader)  # header
        sentences = itertools.chain(*[re.split(r"(?<=[.!?])\s+", row[0].lower()) for row in reader if row])
        sentences = ["%s %s %s" % (sentence_start_token, s, sentence_end_token) for s in sentences if s]
    print("%d sentences" % len(sentences))

    tokenized_sentences = [re.findall(r"[\w']+|[^\w\s]", sent) for sent in sentences]
    word_freq = {}
    for word in itertools.chain(*tokenized_sentences):
        word_freq[word] = word_freq.get(word, 0) + 1
    print("%d distinct tokens" % len(word_freq))

    vocab = sorted(word_freq.items(), key=operator.itemgetter(1), reverse=True)[:vocabulary_size - 1]
    index_to_word = [w for w, _ in vocab] + [unknown_token]
    word_to_index = {w: i for i, w in enumerate(index_to_word)}
    print("keeping the %d most frequent (the rest are %s)" % (vocabulary_size - 1, unknown_token))

    for i, sent in enumerate(tokenized_sentences):
        tokenized_sentences[i] = [w if w in word_to_index else unknown_token for w in sent]
    X_train = np.asarray([[word_to_index[w] for w in sent[:-1]] for sent in tokenized_sentences], dtype=object)
    y_train = np.asarray([[word_to_index[w] for w in sent[1:]] for sent in tokenized_sentences], dtype=object)
    return X_train, y_train, index_to_word, word_to_index


class RNNNumpy:

    def __init__(self, word_dim, hidden_dim=100, bptt_truncate=4):
        self.word_dim = word_dim
        self.hidden_dim = hidden_dim
        self.bptt_truncate = bptt_truncate
        # uniform in [-1/sqrt(n), 1/sqrt(n)], n the number of incoming connections
        self.U = np.random.uniform(-np.sqrt(1. / word_dim), np.sqrt(1. / word_dim), (hidden_dim, word_dim))
        self.V = np.random.uniform(-np.sqrt(1. / hidden_dim), np.sqrt(1. / hidden_dim), (word_dim, hidden_dim))
        self.W = np.random.uniform(-np.sqrt(1. / hidden_dim), np.sqrt(1. / hidden_dim), (hidden_dim, hidden_dim))

    def forward_propagation(self, x):
        T = len(x)
        # every hidden state, plus one extra row (s[-1]) for the initial state, zero
        s = np.zeros((T + 1, self.hidden_dim))
        s[-1] = np.zeros(self.hidden_dim)
        o = np.zeros((T, self.word_dim))
        for t in np.arange(T):
            # U times a one-hot vector is a column of U
            s[t] = np.tanh(self.U[:, x[t]] + self.W.dot(s[t - 1]))
            o[t] = softmax(self.V.dot(s[t]))
        return [o, s]

    def predict(self, x):
        o, s = self.forward_propagation(x)
        return np.argmax(o, axis=1)

    def calculate_total_loss(self, x, y):
        L = 0
        for i in np.arange(len(y)):
            o, s = self.forward_propagation(x[i])
            # the probabilities the model gave the right words
            correct_word_predictions = o[np.arange(len(y[i])), y[i]]
            L += -1 * np.sum(np.log(correct_word_predictions))
        return L

    def calculate_loss(self, x, y):
        N = np.sum([len(y_i) for y_i in y])
        return self.calculate_total_loss(x, y) / N

    def bptt(self, x, y):
        T = len(y)
        o, s = self.forward_propagation(x)
        dLdU = np.zeros(self.U.shape)
        dLdV = np.zeros(self.V.shape)
        dLdW = np.zeros(self.W.shape)
        delta_o = o
        delta_o[np.arange(len(y)), y] -= 1.
        # every output, last first
        for t in np.arange(T)[::-1]:
            dLdV += np.outer(delta_o[t], s[t].T)
            # the error at the hidden layer, before the tanh
            delta_t = self.V.T.dot(delta_o[t]) * (1 - (s[t] ** 2))
            # back in time, at most self.bptt_truncate steps
            for bptt_step in np.arange(max(0, t - self.bptt_truncate), t + 1)[::-1]:
                dLdW += np.outer(delta_t, s[bptt_step - 1])
                dLdU[:, x[bptt_step]] += delta_t
                # the error one step earlier
                delta_t = self.W.T.dot(delta_t) * (1 - s[bptt_step - 1] ** 2)
        return [dLdU, dLdV, dLdW]

    def gradient_check(self, x, y, h=0.001, error_threshold=0.01):
        # the tutorial's check works best with bptt_truncate large enough to cover the sentence
        self.bptt_truncate = 1000
        bptt_gradients = self.bptt(x, y)
        model_parameters = ['U', 'V', 'W']
        for pidx, pname in enumerate(model_parameters):
            parameter = operator.attrgetter(pname)(self)
            print("checking d%s (%d entries)" % (pname, parameter.size))
            it = np.nditer(parameter, flags=['multi_index'], op_flags=['readwrite'])
            while not it.finished:
                ix = it.multi_index
                original_value = parameter[ix]
                parameter[ix] = original_value + h
                gradplus = self.calculate_total_loss([x], [y])
                parameter[ix] = original_value - h
                gradminus = self.calculate_total_loss([x], [y])
                estimated_gradient = (gradplus - gradminus) / (2 * h)
                parameter[ix] = original_value
                backprop_gradient = bptt_gradients[pidx][ix]
                denominator = np.abs(backprop_gradient) + np.abs(estimated_gradient)
                # a word that is not in the sentence: both gradients are exactly zero
                relative_error = np.abs(backprop_gradient - estimated_gradient) / denominator if denominator else 0.0
                if relative_error > error_threshold:
                    print("d%s%s is off: bptt %f, numerical %f (loss %f at +h, %f at -h), relative error %f" % (
                        pname, ix, backprop_gradient, estimated_gradient, gradplus, gradminus, relative_error))
                    return
                it.iternext()
            print("d%s OK" % pname)

    def sgd_step(self, x, y, learning_rate):
        dLdU, dLdV, dLdW = self.bptt(x, y)
        self.U -= learning_rate * dLdU
        self.V -= learning_rate * dLdV
        self.W -= learning_rate * dLdW


def train_with_sgd(model, X_train, y_train, learning_rate=0.005, nepoch=100, evaluate_loss_after=5):
    """Plain SGD, one sentence at a time; halves the learning rate whenever the loss goes up."""
    losses = []
    num_examples_seen = 0
    for epoch in range(nepoch):
        if epoch % evaluate_loss_after == 0:
            loss = model.calculate_loss(X_train, y_train)
            losses.append((num_examples_seen, loss))
            time = datetime.now().strftime('%Y-%m-%d %H:%M:%S')
            print("%s  epoch %d, %d sentences seen, loss %f" % (time, epoch, num_examples_seen, loss))
            if len(losses) > 1 and losses[-1][1] > losses[-2][1]:
                learning_rate = learning_rate * 0.5
                print("loss went up: learning rate now %f" % learning_rate)
            sys.stdout.flush()
        for i in range(len(y_train)):
            model.sgd_step(X_train[i], y_train[i], learning_rate)
            num_examples_seen += 1
    return losses


if __name__ == "__main__":
    X_train, y_train, index_to_word, word_to_index = load_training_data("data/reddit-comments-2015-08.csv")
    np.random.seed(10)
    model = RNNNumpy(vocabulary_size)
    losses = train_with_sgd(model, X_train[:100], y_train[:100], nepoch=10, evaluate_loss_after=1)
