# Copyright 2023 VLMEvalKit Authors. Licensed under the Apache License, Version 2.0 (LICENSE beside
# this file). Copied from https://github.com/open-compass/VLMEvalKit at commit
# e8e78f05f3080fe28154f2130321f17951c3be94 (2026-08-18), for differential tests only: the project's
# own implementation is src/vlmcot/vlmevalkit_scoring.py and must agree with these functions exactly.
#
# Changes from upstream, none in any scoring rule:
#   - imports of vlmeval.smp (istype, listinstr, process_punctuation) and the logger are replaced by
#     copies of those functions (from vlmeval/smp/misc.py) in this file;
#   - the VERBOSE branch of can_infer_option (logging only, off by default) is kept but reads no
#     environment variable (verbose = 0);
#   - `score_*` helpers at the bottom wrap the per-dataset loops of image_vqa.py / mathvista.py /
#     multiple_choice.py for one sample, keeping their exact expressions (marked "as upstream").
#
# Sources: vlmeval/smp/misc.py (process_punctuation, istype, listinstr);
# vlmeval/dataset/utils/vqa_eval.py (_process_digit_article, hit_calculate, relaxed_correctness,
# levenshtein_distance, anls_compute, process_answer, process_line);
# vlmeval/utils/matching_util.py (can_infer_option, can_infer_text, can_infer);
# vlmeval/dataset/utils/mathvista.py (list_to_dict, post_check);
# vlmeval/dataset/utils/multiple_choice.py (MMMU_preproc, extract_answer_from_item, eval_vanilla);
# vlmeval/dataset/image_vqa.py (OCRBench.evaluate inner loop); judge prompts: mathvista.py
# (get_gpt4_ICE, build_mathvista_gpt4_prompt), multiple_choice.py (build_prompt), smp/vlm.py
# (build_option_str, with `not pd.isna(content)` as `content is not None`).
# flake8: noqa
# fmt: off
import copy as cp
import re
import string
from typing import Optional

import numpy as np


# ---- vlmeval/smp/misc.py ------------------------------------------------------------------------
def process_punctuation(inText):
    import re
    outText = inText
    punct = [
        ';', r'/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`',
        ',', '?', '!'
    ]
    commaStrip = re.compile(r'(\d)(,)(\d)')
    periodStrip = re.compile(r'(?<!\d)\.(?!\d)')
    for p in punct:
        if (p + ' ' in inText or ' ' + p in inText) or (re.search(commaStrip, inText) is not None):
            outText = outText.replace(p, '')
        else:
            outText = outText.replace(p, ' ')
    outText = periodStrip.sub('', outText, re.UNICODE)
    return outText


def istype(s, type):
    if isinstance(s, type):
        return True
    try:
        return isinstance(eval(s), type)
    except Exception:
        return False


def listinstr(lst, s):
    assert isinstance(lst, list)
    for item in lst:
        if item in s:
            return True
    return False


# ---- vlmeval/dataset/utils/vqa_eval.py ----------------------------------------------------------
def _process_digit_article(inText):
    outText = []
    tempText = inText.lower().split()
    articles = ['a', 'an', 'the']
    manualMap = {
        'none': '0',
        'zero': '0',
        'one': '1',
        'two': '2',
        'three': '3',
        'four': '4',
        'five': '5',
        'six': '6',
        'seven': '7',
        'eight': '8',
        'nine': '9',
        'ten': '10',
    }
    contractions = {
        'aint': "ain't", 'arent': "aren't", 'cant': "can't", 'couldve': "could've", 'couldnt': "couldn't",
        "couldn'tve": "couldn't've", "couldnt've": "couldn't've", 'didnt': "didn't", 'doesnt': "doesn't",
        'dont': "don't", 'hadnt': "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've",
        'hasnt': "hasn't", 'havent': "haven't", 'hed': "he'd", "hed've": "he'd've", "he'dve": "he'd've",
        'hes': "he's", 'howd': "how'd", 'howll': "how'll", 'hows': "how's", "Id've": "I'd've",
        "I'dve": "I'd've", 'Im': "I'm", 'Ive': "I've", 'isnt': "isn't", 'itd': "it'd",
        "itd've": "it'd've", "it'dve": "it'd've", 'itll': "it'll", "let's": "let's", 'maam': "ma'am",
        'mightnt': "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
        'mightve': "might've", 'mustnt': "mustn't", 'mustve': "must've", 'neednt': "needn't",
        'notve': "not've", 'oclock': "o'clock", 'oughtnt': "oughtn't", "ow's'at": "'ow's'at",
        "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", 'shant': "shan't", "shed've": "she'd've",
        "she'dve": "she'd've", "she's": "she's", 'shouldve': "should've", 'shouldnt': "shouldn't",
        "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": 'somebodyd',
        "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", 'somebodyll': "somebody'll",
        'somebodys': "somebody's", 'someoned': "someone'd", "someoned've": "someone'd've",
        "someone'dve": "someone'd've", 'someonell': "someone'll", 'someones': "someone's",
        'somethingd': "something'd", "somethingd've": "something'd've",
        "something'dve": "something'd've", 'somethingll': "something'll", 'thats': "that's",
        'thered': "there'd", "thered've": "there'd've", "there'dve": "there'd've",
        'therere': "there're", 'theres': "there's", 'theyd': "they'd", "theyd've": "they'd've",
        "they'dve": "they'd've", 'theyll': "they'll", 'theyre': "they're", 'theyve': "they've",
        'twas': "'twas", 'wasnt': "wasn't", "wed've": "we'd've", "we'dve": "we'd've", 'weve': "we've",
        'werent': "weren't", 'whatll': "what'll", 'whatre': "what're", 'whats': "what's",
        'whatve': "what've", 'whens': "when's", 'whered': "where'd", 'wheres': "where's",
        'whereve': "where've", 'whod': "who'd", "whod've": "who'd've", "who'dve": "who'd've",
        'wholl': "who'll", 'whos': "who's", 'whove': "who've", 'whyll': "why'll", 'whyre': "why're",
        'whys': "why's", 'wont': "won't", 'wouldve': "would've", 'wouldnt': "wouldn't",
        "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", 'yall': "y'all",
        "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
        "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", 'youd': "you'd", "youd've": "you'd've",
        "you'dve": "you'd've", 'youll': "you'll", 'youre': "you're", 'youve': "you've",
    }
    for word in tempText:
        word = manualMap.setdefault(word, word)
        if word not in articles:
            outText.append(word)
    for wordId, word in enumerate(outText):
        if word in contractions:
            outText[wordId] = contractions[word]
    outText = ' '.join(outText)
    return outText


def hit_calculate(result, dataset_name, anls_threshold=0.5):
    if listinstr(['TextVQA'], dataset_name):
        return [np.mean(x['match']) for x in result]
    elif listinstr(['DocVQA', 'InfoVQA'], dataset_name):
        return [0.0 if 1 - np.min(x['match']) < anls_threshold else 1 - np.min(x['match']) for x in result]
    elif listinstr(['ChartQA', 'OCRVQA'], dataset_name):
        return [np.max(x['match']) for x in result]
    else:  # default using vqa_score to calculate score
        return [np.mean(x['match']) for x in result]


# https://github.com/google-research/pix2struct/blob/main/pix2struct/metrics.py#L81
def relaxed_correctness(target: str,
                        prediction: str,
                        max_relative_change: float = 0.05) -> bool:
    def _to_float(text: str) -> Optional[float]:
        try:
            if text.endswith('%'):
                # Convert percentages to floats.
                return float(text.rstrip('%')) / 100.0
            else:
                return float(text)
        except ValueError:
            return None
    prediction = str(prediction)
    target = str(target)
    prediction_float = _to_float(prediction)
    target_float = _to_float(target)
    if prediction_float is not None and target_float:
        relative_change = abs(prediction_float - target_float) / abs(target_float)
        return relative_change <= max_relative_change
    else:
        return prediction.lower() == target.lower()


def levenshtein_distance(s1, s2):
    if len(s1) > len(s2):
        s1, s2 = s2, s1

    distances = range(len(s1) + 1)
    for i2, c2 in enumerate(s2):
        distances_ = [i2 + 1]
        for i1, c1 in enumerate(s1):
            if c1 == c2:
                distances_.append(distances[i1])
            else:
                distances_.append(1 + min((distances[i1], distances[i1 + 1], distances_[-1])))
        distances = distances_
    return distances[-1]


def anls_compute(groundtruth, prediction):
    gt_answer = ' '.join(groundtruth.strip().lower().split())
    det_answer = ' '.join(prediction.strip().lower().split())
    dist = levenshtein_distance(gt_answer, det_answer)
    length = max(len(groundtruth.upper()), len(prediction.upper()))
    values = 0.0 if length == 0 else float(dist) / float(length)
    return values


def process_answer(answer):
    answer = answer.replace('\n', ' ')
    answer = answer.replace('\t', ' ')
    answer = answer.strip()
    answer = process_punctuation(answer)
    answer = _process_digit_article(answer)
    return answer


def process_line(line, method='vqa_score'):
    ret = {}
    if istype(line['answer'], list):
        answers = eval(line['answer'])
    else:
        answers = [line['answer']]
    if method == 'vqa_score':
        ret['gt'] = [process_answer(x) for x in answers]
        ret['pred'] = process_answer(line['prediction'])
        ret['match'] = []
        for current_idx, gtAnsDatum in enumerate(ret['gt']):
            otherGTAns = [
                item for ret_gt_idx, item in enumerate(ret['gt'])
                if ret_gt_idx != current_idx
            ]
            matchingAns = [
                item for item in otherGTAns if item == ret['pred']
            ]
            acc = min(1, float(len(matchingAns)) / 3)
            ret['match'].append(acc)
    elif method == 'anls':
        ret['gt'] = answers
        ret['pred'] = line['prediction']
        ret['match'] = [anls_compute(x, ret['pred']) for x in ret['gt']]
    elif method == 'relaxed_accuracy':
        ret['gt'] = answers
        ret['pred'] = line['prediction'].strip()
        ret['match'] = [relaxed_correctness(x, ret['pred']) for x in ret['gt']]
    elif method == 'accuracy':
        ret['gt'] = answers
        ret['pred'] = line['prediction'].strip()
        ret['match'] = [(1.0 if (x.strip().lower() == ret['pred'].strip().lower()) else 0.0) for x in ret['gt']]
    else:  # default using vqa_score to calculate score
        ret['gt'] = [process_answer(x) for x in answers]
        ret['pred'] = process_answer(line['prediction'])
        ret['match'] = [x == ret['pred'] for x in ret['gt']]

    return ret


# ---- vlmeval/utils/matching_util.py -------------------------------------------------------------
_VERBOSE_ANSWER_RE = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")


def can_infer_option(answer, choices):
    verbose = 0
    # Choices is a dictionary
    if 'Failed to obtain answer via API' in answer:
        return False

    reject_to_answer = [
        "Sorry, I can't help with images of people yet.", "I can't process this file.",
        "I'm sorry, but without the image provided", 'Cannot determine the answer'
    ]
    for err in reject_to_answer:
        if err in answer:
            return 'Z'

    def count_choice(splits, choices, prefix='', suffix=''):
        cnt = 0
        for c in choices:
            if prefix + c + suffix in splits:
                cnt += 1
        return cnt

    answer_mod = cp.copy(answer)
    chars = '.()[],:;!*#{}'
    for c in chars:
        answer_mod = answer_mod.replace(c, ' ')

    splits = [x.strip() for x in answer_mod.split()]
    count = count_choice(splits, choices)

    if count == 1:
        for ch in choices:
            if 'A' in splits and len(splits) > 3 and verbose:
                return False
            if ch in splits and splits.index(ch) > (len(splits) - 5):
                return ch
    elif count == 0 and count_choice(splits, {'Z', ''}) == 1:
        return 'Z'

    match = _VERBOSE_ANSWER_RE.search(answer or "")
    if match and match.group(1).upper() in choices:
        return match.group(1).upper()

    return False


def can_infer_text(answer, choices):
    answer = answer.lower()
    if len(answer) > 2 * sum(len(str(v)) for v in choices.values()):
        return False
    assert isinstance(choices, dict)
    for k in choices:
        assert k in string.ascii_uppercase
        choices[k] = str(choices[k]).lower()
    cands = []
    for k in choices:
        if choices[k] in answer:
            cands.append(k)
    if len(cands) == 1:
        return cands[0]
    return False


def can_infer(answer, choices):
    answer = str(answer)
    copt = can_infer_option(answer, choices)
    return copt if copt else can_infer_text(answer, choices)


# ---- vlmeval/dataset/utils/mathvista.py ---------------------------------------------------------
def list_to_dict(lst):
    return {chr(65 + i): val for i, val in enumerate(lst)}


def post_check(line, prefetch=False):
    res = None
    ans = line['answer']
    response = line['prediction'] if prefetch else line['res']
    try:
        if line['question_type'] == 'multi_choice':
            ans = line['answer_option']
            choices = list_to_dict(eval(line['choices']))
            res = can_infer(response, choices)
            if prefetch:
                return res
        else:
            if line['answer_type'] == 'integer':
                res = int(response)
                ans = int(line['answer'])
            elif line['answer_type'] == 'float':
                res = float(response)
                ans = float(line['answer'])
            else:
                res = str(res)
                ans = str(ans)
    except ValueError:
        pass

    if res == ans:
        return res if prefetch else True
    else:
        return False


# ---- one-sample wrappers of the per-dataset loops (expressions as upstream) ----------------------
def score_vqa_line(answer_list, prediction, method, dataset_name):
    """ImageVQADataset.evaluate_heuristic for one row: process_line then hit_calculate."""
    line = {'answer': str(answer_list), 'prediction': prediction}
    return float(hit_calculate([process_line(line, method)], dataset_name)[0])


def score_ocrbench_line(answers, predict, category):
    """OCRBench.evaluate inner loop for one row (1 = hit)."""
    predict = str(predict)
    if category == 'Handwritten Mathematical Expression Recognition':
        for j in range(len(answers)):
            answer = answers[j].strip().replace('\n', ' ').replace(' ', '')
            predict = predict.strip().replace('\n', ' ').replace(' ', '')
            if answer in predict:
                return 1
    else:
        for j in range(len(answers)):
            answer = answers[j].lower().strip().replace('\n', ' ')
            predict = predict.lower().strip().replace('\n', ' ')
            if answer in predict:
                return 1
    return 0


def score_mcq_line(prediction, options, gt_letter):
    """extract_answer_from_item with model=None (`--judge exact_matching`) then eval_vanilla."""
    choices = {}
    for i, ch in enumerate(string.ascii_uppercase[:len(options)]):
        choices[ch] = options[i]
    ret = can_infer(prediction, choices)
    opt = ret if ret else 'Z'
    return 1 if opt == gt_letter else 0


def score_mmmu_open_line(prediction, answer):
    """mcq_vanilla_eval for MMMU: MMMU_preproc (open question -> A = answer, B = 'Other Answers'),
    GT = the answer if it is an uppercase letter else 'A', then score_mcq_line."""
    gt = answer if answer in list(string.ascii_uppercase) else 'A'
    return score_mcq_line(prediction, [answer, 'Other Answers'], gt)


def mathvista_line(prediction, question_type, answer_type, answer, answer_option=None, choices=None, res=None):
    return {'prediction': prediction, 'question_type': question_type, 'answer_type': answer_type,
            'answer': answer, 'answer_option': answer_option, 'choices': str(choices), 'res': res}


def mathvista_prefetch(line):
    """MathVista_auxeval: the prefetch result (falsy: the judge is asked)."""
    return post_check(line, prefetch=True)


def mathvista_hit(line):
    """MathVista_acc: post_check(prefetch=False) on line['res'] (the prefetch or judge output)."""
    return 1 if post_check(line, prefetch=False) else 0


# ---- judge prompts: vlmeval/dataset/utils/mathvista.py, multiple_choice.py, smp/vlm.py ------------
def get_gpt4_ICE():
    example_1 = """
Hint: Please answer the question requiring an integer answer and provide the final value,
e.g., 1, 2, 3, at the end.\n
Question: Which number is missing?\n
Model response: The number missing in the sequence is 14.\n
Extracted answer: 14
"""

    example_2 = """
Hint: Please answer the question requiring a floating-point number with one decimal place and provide the final value,
e.g., 1.2, 1.3, 1.4, at the end.\n
Question: What is the fraction of females facing the camera?\n
Model response: The fraction of females facing the camera is 0.6,
which means that six out of ten females in the group are facing the camera.\n
Extracted answer: 0.6
"""

    example_3 = """
Hint: Please answer the question requiring a floating-point number with two decimal places and provide the final value,
e.g., 1.23, 1.34, 1.45, at the end.\n
Question: How much money does Luca need to buy a sour apple candy and a butter-scotch candy? (Unit: $)\n
Model response: Luca needs $1.45 to buy a sour apple candy and a butterscotch candy.\n
Extracted answer: 1.45
"""

    example_4 = """
Hint: Please answer the question requiring a Python list as an answer and provide the final list,
e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.\n
Question: Between which two years does the line graph saw its maximum peak?\n
Model response: The line graph saw its maximum peak between 2007 and 2008.\n
Extracted answer: [2007, 2008]
"""

    example_5 = """
Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\n
Question: What fraction of the shape is blue?\n
Choices: (A) 3/11 (B) 8/11 (C) 6/11 (D) 3/5\n
Model response: The correct answer is (B) 8/11.\n
Extracted answer: B
"""

    return [example_1, example_2, example_3, example_4, example_5]


def build_mathvista_gpt4_prompt(line):
    task_description = """
Please read the following example.
Then extract the answer from the model response and type it at the end of the prompt.\n
"""
    question = line['question']
    prediction = str(line['prediction'])
    prompt = task_description
    examples = get_gpt4_ICE()
    for example in examples:
        prompt += example + '\n'
    prompt += question + '\n'
    prompt += 'Model respone: ' + prediction
    prompt += 'Extracted answer:'
    return prompt


def build_option_str(option_dict):
    s = 'There are several options: \n'
    for c, content in option_dict.items():
        if content is not None:
            s += f'{c}. {content}\n'
    return s


def build_prompt(question, options, prediction):
    tmpl = (
        'You are an AI assistant who will help me to match '
        'an answer with several options of a single-choice question. '
        'You are provided with a question, several options, and an answer, '
        'and you need to find which option is most similar to the answer. '
        'If the meaning of all options are significantly different from the answer, output Z. '
        'Your should output a single uppercase character in A, B, C, D (if they are valid options), and Z. \n'
        'Example 1: \n'
        'Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n'
        'Answer: a cute teddy bear\nYour output: A\n'
        'Example 2: \n'
        'Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n'
        'Answer: Spider\nYour output: Z\n'
        'Example 3: \n'
        'Question: {}?\nOptions: {}\nAnswer: {}\nYour output: '
    )
    return tmpl.format(question, options, prediction)
